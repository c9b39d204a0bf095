# amber: `make` builds bin/amber, `make demo` shows a checkpoint and a
# restore, `make test` runs what CI runs (as root for the end-to-end tests).
GO ?= go
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all build demo test vet clean
all: build

build:
	$(GO) build -o bin/amber ./cmd/amber

demo: build
	bash test/demo/demo.sh

test: vet
	$(GO) test $(TESTFLAGS) ./...

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
