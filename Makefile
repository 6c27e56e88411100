# loglinear.c build.  `make` builds ./train and ./tokenize (release), `make test` builds every
# tests/test_*.c with AddressSanitizer + UBSan and runs them, `make bench` runs the benchmarks,
# `make compile_commands.json` writes the compilation database for editors and clang tools.
# `make WERROR=1 ...` turns warnings into errors (CI: scripts/test.sh); off by default for users.
CC      ?= gcc
PKG_CFLAGS := $(shell pkg-config --cflags check libpcre2-8 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs libpcre2-8 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)
WERROR  ?= 0

BASE_CFLAGS = -std=c11 -Wall -Wextra -Wshadow -D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE -fopenmp -Isrc $(PKG_CFLAGS)
ifeq ($(WERROR),1)
BASE_CFLAGS += -Werror
endif
REL_CFLAGS  = $(BASE_CFLAGS) -O3 -march=native -g
TEST_CFLAGS = $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LIBS        = -lopenblas -lcjson -lz $(PKG_LIBS) -lm -fopenmp
# Exact header dependencies: every compile writes a .d file next to its output (included below).
DEPFLAGS    = -MMD -MP

LIB_SRC  := $(filter-out src/train.c,$(wildcard src/*.c))
REL_OBJ  := $(patsubst src/%.c,build/rel/%.o,$(LIB_SRC))
TEST_OBJ := $(patsubst src/%.c,build/asan/%.o,$(LIB_SRC))
TESTS    := $(patsubst tests/%.c,build/asan/%,$(wildcard tests/test_*.c))
BENCHES  := $(patsubst tests/%.c,build/rel/%,$(wildcard tests/bench_*.c))

# The scan kernels are compiled without -ftrapping-math: with it GCC refuses to if-convert the clamps in
# scan_exp (kernel_util.h) and the decay loops stay scalar (~4x slower). It only drops the guarantee about
# FP exception flags; results and NaN propagation are unchanged.
SCAN_KERNELS := ssd_chunk scan_ssd scan_loglinear deltanet
$(foreach k,$(SCAN_KERNELS),build/rel/$(k).o build/asan/$(k).o): KERNEL_CFLAGS = -fno-trapping-math

.PHONY: all test bench clean compile_commands.json build-tests-and-benches
.SECONDARY:
all: train tokenize

build/rel/%.o: src/%.c | build/rel
	$(CC) $(REL_CFLAGS) $(KERNEL_CFLAGS) $(DEPFLAGS) -c $< -o $@
build/asan/%.o: src/%.c | build/asan
	$(CC) $(TEST_CFLAGS) $(KERNEL_CFLAGS) $(DEPFLAGS) -c $< -o $@
build/rel build/asan:
	mkdir -p $@

train: src/train.c $(REL_OBJ) | build/rel
	$(CC) $(REL_CFLAGS) $(DEPFLAGS) -MF build/rel/train.d -MT $@ $< $(REL_OBJ) -o $@ $(LIBS)
tokenize: data/tokenize.c $(REL_OBJ) | build/rel
	$(CC) $(REL_CFLAGS) $(DEPFLAGS) -MF build/rel/tokenize.d -MT $@ $< $(REL_OBJ) -o $@ $(LIBS)

build/asan/test_%: tests/test_%.c $(TEST_OBJ) | build/asan
	$(CC) $(TEST_CFLAGS) $(DEPFLAGS) -MF $@.d -MT $@ -Itests $< $(TEST_OBJ) -o $@ $(LIBS) $(CHECK_LIBS)
build/rel/bench_%: tests/bench_%.c $(REL_OBJ) | build/rel
	$(CC) $(REL_CFLAGS) $(DEPFLAGS) -MF $@.d -MT $@ -Itests $< $(REL_OBJ) -o $@ $(LIBS)

# Each test binary runs on its own so one failure names its suite; all must pass.
test: $(TESTS) train tokenize
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 ./tests/run_tests.sh $(TESTS)

# Every benchmark at 1, 2 and all cores, then the thread scaling (BENCH_THREADS="1 8 16" for others).
bench: $(BENCHES)
	@./scripts/bench.sh $(BENCHES)

# Builds the test and benchmark binaries without running them (used by scripts/compile_commands.sh).
build-tests-and-benches: $(TESTS) $(BENCHES)

# The compilation database (for clangd, clang-tidy, editors) of a full rebuild, generated from the
# commands `make -n` prints (scripts/compile_commands.sh): nothing is built. (`bear -- make -B` writes
# the same, at the cost of a rebuild.)
compile_commands.json:
	./scripts/compile_commands.sh "$(CC)" $(MAKE) > $@.tmp && mv $@.tmp $@
	@echo "wrote $@ ($$(grep -c '"file"' $@) entries)"

clean:
	rm -rf build train tokenize compile_commands.json

-include $(wildcard build/rel/*.d build/asan/*.d)
