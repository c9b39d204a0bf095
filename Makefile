# amber: `make` builds bin/amber, `make demo` shows a checkpoint and a
# restore, `make test` runs what CI runs (as root for the end-to-end tests).
GO ?= go
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all build demo test vet clean
all: build

# amber is built without cgo: a static binary that runs on any x86-64
# Linux, and starts a millisecond sooner than one linked with libc (every
# dump, restore and check an engine runs pays it).
build:
	CGO_ENABLED=0 $(GO) build -o bin/amber ./cmd/amber

demo: build
	bash test/demo/demo.sh

test: vet
	$(GO) test $(TESTFLAGS) ./...

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
