# The README's commands.  CMake is the build; this file only drives it.
#
#   make demo    build everything and run the tour of the examples
#   make test    build and run every test: plain, ASan+UBSan and TSan builds
#   make bench   build and run the benchmarks beside std::stop_token, GCancellable
#   make install install headers, libraries, cancel.pc and the CMake package
#                under PREFIX (default /usr/local), staged under DESTDIR
#   make fuzz    run the API-sequence fuzzer for FUZZ_SECONDS (default 600)
#   make soak    run the soak test for DURATION seconds (default 600)
#   make check-valgrind  unit and fault tests under memcheck (build/plain),
#                stress tests under DRD (build/drd, annotated for it); slow
#
# Build trees live in build/<variant>.  JOBS sets the build parallelism.

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
CTEST ?= ctest
CC ?= cc
WERROR ?= $(if $(CI),ON,OFF)
CMAKE_FLAGS = -DCANCEL_WERROR=$(WERROR)
# The ASan+UBSan tree is built with clang when it is installed, so that
# `make test` compiles everything warning-free with both gcc and clang.
CLANG ?= $(shell command -v clang 2>/dev/null)

PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all demo test test-plain test-asan test-tsan bench clean format \
	deps-bench deps-test deps-bridges install fuzz soak check-valgrind

all: build/plain/.built

build/%/.configured:
	@mkdir -p build/$*
	$(CMAKE) -S . -B build/$* $(CMAKE_FLAGS) $(VARIANT_FLAGS) >/dev/null
	@touch $@

build/plain/.configured: VARIANT_FLAGS =
build/asan/.configured: VARIANT_FLAGS = -DCANCEL_SANITIZE=address $(if $(CLANG),-DCMAKE_C_COMPILER=$(CLANG))
build/tsan/.configured: VARIANT_FLAGS = -DCANCEL_SANITIZE=thread
build/drd/.configured: VARIANT_FLAGS = -DCANCEL_VALGRIND=ON
build/release/.configured: VARIANT_FLAGS = -DCMAKE_BUILD_TYPE=Release -DCANCEL_BUILD_TESTS=OFF -DCANCEL_BUILD_EXAMPLES=OFF -DCMAKE_INSTALL_PREFIX=$(PREFIX)
build/bench/.configured: VARIANT_FLAGS = -DCMAKE_BUILD_TYPE=Release -DCANCEL_BUILD_BENCH=ON -DCANCEL_BUILD_TESTS=OFF -DCANCEL_BUILD_EXAMPLES=OFF -DCANCEL_BUILD_BRIDGES=OFF

build/%/.built: build/%/.configured FORCE
	$(CMAKE) --build build/$* -j $(JOBS)
	@touch $@

FORCE:

demo: build/plain/.built
	@sh examples/tour.sh build/plain/examples

# Every test runs in the plain build, then under ASan+UBSan and under TSan.
# The summary line of each CTest run is kept and totalled at the end.
test: deps-test deps-bridges
	@$(MAKE) --no-print-directory build/plain/.built build/asan/.built build/tsan/.built
	@sh tests/run-all.sh build/plain build/asan build/tsan

test-plain test-asan test-tsan: test-%:
	@$(MAKE) --no-print-directory build/$*/.built
	@sh tests/run-all.sh build/$*

deps-test:
	@sh tests/deps.sh

# The optional libuv and GLib bridges are built and tested when their -dev
# packages are there; make test installs them (as root) so they always are.
deps-bridges:
	@sh bridges/deps.sh

install: build/release/.built
	DESTDIR=$(DESTDIR) $(CMAKE) --install build/release --prefix $(PREFIX)

FUZZ_SECONDS ?= 600
DURATION ?= 600

fuzz: deps-test
	@sh fuzz/run.sh $(FUZZ_SECONDS)

soak: build/plain/.built
	@sh soak/soak.sh $(DURATION) build/plain

# Both passes always run; each prints its summary again at the end.
check-valgrind:
	@command -v valgrind >/dev/null || { echo "apt-get install valgrind"; exit 1; }
	@$(MAKE) --no-print-directory build/plain/.built build/drd/.built
	@rm -f build/plain/valgrind/summary build/drd/valgrind/summary; \
	status=0; \
	sh valgrind/run.sh build/plain memcheck || status=1; \
	sh valgrind/run.sh build/drd threads || status=1; \
	echo; cat build/plain/valgrind/summary build/drd/valgrind/summary; \
	exit $$status

deps-bench:
	@sh bench/deps.sh

bench: deps-bench
	@$(MAKE) --no-print-directory build/bench/.built
	@sh bench/run.sh build/bench/bench

format:
	clang-format -i include/cancel/*.h src/*.c src/*.h src/platform/*.[ch] \
	    tests/*.[ch] tests/*/*.c examples/*.[ch] bench/*.cc bench/*.h bench/*.c

clean:
	rm -rf build
