# loglinear.c build.  `make` builds ./train and ./tokenize (release), `make test` builds every
# tests/test_*.c with AddressSanitizer + UBSan and runs them, `make bench` runs the benchmarks.
CC      ?= gcc
PKG_CFLAGS := $(shell pkg-config --cflags check libpcre2-8 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs libpcre2-8 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

BASE_CFLAGS = -std=c11 -Wall -Wextra -Wshadow -D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE -fopenmp -Isrc $(PKG_CFLAGS)
REL_CFLAGS  = $(BASE_CFLAGS) -O3 -march=native -g
TEST_CFLAGS = $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LIBS        = -lopenblas -lcjson -lz $(PKG_LIBS) -lm -fopenmp

LIB_SRC  := $(filter-out src/train.c,$(wildcard src/*.c))
LIB_HDR  := $(wildcard src/*.h)
REL_OBJ  := $(patsubst src/%.c,build/rel/%.o,$(LIB_SRC))
TEST_OBJ := $(patsubst src/%.c,build/asan/%.o,$(LIB_SRC))
TESTS    := $(patsubst tests/%.c,build/asan/%,$(wildcard tests/test_*.c))
BENCHES  := $(patsubst tests/%.c,build/rel/%,$(wildcard tests/bench_*.c))

.PHONY: all test bench clean
.SECONDARY:
all: train tokenize

build/rel/%.o: src/%.c $(LIB_HDR) | build/rel
	$(CC) $(REL_CFLAGS) -c $< -o $@
build/asan/%.o: src/%.c $(LIB_HDR) | build/asan
	$(CC) $(TEST_CFLAGS) -c $< -o $@
build/rel build/asan:
	mkdir -p $@

train: src/train.c $(REL_OBJ)
	$(CC) $(REL_CFLAGS) $^ -o $@ $(LIBS)
tokenize: data/tokenize.c $(REL_OBJ)
	$(CC) $(REL_CFLAGS) $^ -o $@ $(LIBS)

build/asan/test_%: tests/test_%.c $(wildcard tests/*.h) $(TEST_OBJ)
	$(CC) $(TEST_CFLAGS) -Itests $< $(TEST_OBJ) -o $@ $(LIBS) $(CHECK_LIBS)
build/rel/bench_%: tests/bench_%.c $(REL_OBJ)
	$(CC) $(REL_CFLAGS) -Itests $^ -o $@ $(LIBS)

# Each test binary runs on its own so one failure names its suite; all must pass.
test: $(TESTS) train tokenize
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 ./tests/run_tests.sh $(TESTS)

bench: $(BENCHES)
	@for b in $(BENCHES); do ./$$b || exit 1; done

clean:
	rm -rf build train tokenize
