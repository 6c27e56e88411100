# loglinear.c build.  `make` builds ./train, ./generate, ./evaluate and ./tokenize (release), `make test` builds every
# tests/test_*.c with AddressSanitizer + UBSan and runs them, `make bench` runs the benchmarks,
# `make compile_commands.json` writes the compilation database for editors and clang tools.
# `make fuzz` runs the libFuzzer harnesses of the file parsers (tests/fuzz/, FUZZ_SECONDS each; clang).
# `make WERROR=1 ...` turns warnings into errors (CI: scripts/test.sh); off by default for users.
CC      ?= gcc
PKG_CFLAGS := $(shell pkg-config --cflags check libpcre2-8 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs libpcre2-8 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)
WERROR  ?= 0
# Data-parallel training over MPI (src/dist.c): on when OpenMPI's development files are found. `make MPI=0`
# builds without it: ./train then needs no libmpi and refuses to run as several mpirun processes.
MPI     ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)

BASE_CFLAGS = -std=c11 -Wall -Wextra -Wshadow -D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE -fopenmp -Isrc $(PKG_CFLAGS)
ifeq ($(WERROR),1)
BASE_CFLAGS += -Werror
endif
REL_CFLAGS  = $(BASE_CFLAGS) -O3 -march=native -g
TEST_CFLAGS = $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LIBS        = -lopenblas -lcjson -lz $(PKG_LIBS) -lm -fopenmp
ifeq ($(MPI),1)
MPI_CFLAGS := -DLL_MPI $(shell pkg-config --cflags ompi-c)
LIBS       += $(shell pkg-config --libs ompi-c)
endif
# Exact header dependencies: every compile writes a .d file next to its output (included below).
DEPFLAGS    = -MMD -MP

# src/*.c without the programs' mains.
PROGRAMS := train generate evaluate
LIB_SRC  := $(filter-out $(patsubst %,src/%.c,$(PROGRAMS)),$(wildcard src/*.c))
REL_OBJ  := $(patsubst src/%.c,build/rel/%.o,$(LIB_SRC))
TEST_OBJ := $(patsubst src/%.c,build/asan/%.o,$(LIB_SRC))
TESTS    := $(patsubst tests/%.c,build/asan/%,$(wildcard tests/test_*.c))
BENCHES  := $(patsubst tests/%.c,build/rel/%,$(wildcard tests/bench_*.c))

# The scan kernels are compiled without -ftrapping-math: with it GCC refuses to if-convert the clamps in
# scan_exp (kernel_util.h) and the decay loops stay scalar (~4x slower). It only drops the guarantee about
# FP exception flags; results and NaN propagation are unchanged.
SCAN_KERNELS := ssd_chunk scan_ssd scan_loglinear deltanet
$(foreach k,$(SCAN_KERNELS),build/rel/$(k).o build/asan/$(k).o): KERNEL_CFLAGS = -fno-trapping-math
# Only dist.c sees mpi.h; it is rebuilt when MPI= changes (build/mpi.setting holds the last setting and is
# rewritten, at parse time, only when it changes).
$(shell mkdir -p build && [ "$$(cat build/mpi.setting 2>/dev/null)" = "$(MPI)" ] || echo "$(MPI)" > build/mpi.setting)
build/rel/dist.o build/asan/dist.o: KERNEL_CFLAGS = $(MPI_CFLAGS)
build/rel/dist.o build/asan/dist.o: build/mpi.setting

# libFuzzer harnesses (clang): the parsers of every file a user hands the trainer, with ASan + UBSan.
FUZZ_CC      ?= clang
FUZZ_CFLAGS   = $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB     := common config json_strict levels safetensors data mqar rng tokenizer checkpoint train_state
FUZZ_OBJ     := $(patsubst %,build/fuzz/%.o,$(FUZZ_LIB))
FUZZERS      := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 180
FUZZ_TEST_SECONDS ?= 20
# Harnesses fuzzed at once (default: one per core, each then has a core to itself).
FUZZ_JOBS ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: all test bench clean compile_commands.json build-tests-and-benches fuzz
.DEFAULT_GOAL := all
.SECONDARY:
all: $(PROGRAMS) tokenize

build/rel/%.o: src/%.c | build/rel
	$(CC) $(REL_CFLAGS) $(KERNEL_CFLAGS) $(DEPFLAGS) -c $< -o $@
build/asan/%.o: src/%.c | build/asan
	$(CC) $(TEST_CFLAGS) $(KERNEL_CFLAGS) $(DEPFLAGS) -c $< -o $@
build/fuzz/%.o: src/%.c | build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(KERNEL_CFLAGS) $(DEPFLAGS) -c $< -o $@
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_OBJ) | build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Itests/fuzz $< $(FUZZ_OBJ) -o $@ $(LIBS)
build/rel build/asan build/fuzz:
	mkdir -p $@

$(PROGRAMS): %: src/%.c $(REL_OBJ) | build/rel
	$(CC) $(REL_CFLAGS) $(DEPFLAGS) -MF build/rel/$@.d -MT $@ $< $(REL_OBJ) -o $@ $(LIBS)
tokenize: data/tokenize.c $(REL_OBJ) | build/rel
	$(CC) $(REL_CFLAGS) $(DEPFLAGS) -MF build/rel/tokenize.d -MT $@ $< $(REL_OBJ) -o $@ $(LIBS)

build/asan/test_%: tests/test_%.c $(TEST_OBJ) | build/asan
	$(CC) $(TEST_CFLAGS) $(DEPFLAGS) -MF $@.d -MT $@ -Itests $< $(TEST_OBJ) -o $@ $(LIBS) $(CHECK_LIBS)
build/rel/bench_%: tests/bench_%.c $(REL_OBJ) | build/rel
	$(CC) $(REL_CFLAGS) $(DEPFLAGS) -MF $@.d -MT $@ -Itests $< $(REL_OBJ) -o $@ $(LIBS)

# Each test binary runs on its own so one failure names its suite; all must pass. Then each fuzzer runs
# briefly over its seed corpus and whatever it finds in FUZZ_TEST_SECONDS (FUZZ_JOBS at a time: 6 x 20 s
# take a minute on 2 cores).
test: $(TESTS) $(PROGRAMS) tokenize $(FUZZERS) build/rel/bench_scan
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 ./tests/run_tests.sh $(TESTS)
	@./tests/fuzz/run.sh -j $(FUZZ_JOBS) $(FUZZ_TEST_SECONDS) $(FUZZERS)

# Longer fuzzing: FUZZ_SECONDS per harness (default 3 minutes), e.g. `make fuzz FUZZ_SECONDS=3600`.
fuzz: $(FUZZERS)
	./tests/fuzz/run.sh -j $(FUZZ_JOBS) $(FUZZ_SECONDS) $(FUZZERS)

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
	rm -rf build $(PROGRAMS) tokenize compile_commands.json

-include $(wildcard build/rel/*.d build/asan/*.d build/fuzz/*.d)
