# Example: reprocess several nights with Make (make -f scripts/reprocess.mk -j8 NIGHTS="…").
#
#   make -f scripts/reprocess.mk -j8 RAWDIR=/data/raw OUTDIR=/data/redux NIGHTS="20260101 20260102"
#
# For each night, spx-pipeline writes a Makefile with one rule per task (outputs are targets,
# inputs prerequisites, the binary's command line the recipe), and make runs it. Finished
# outputs are up to date, so rerunning after a failure or a crash redoes only what is missing;
# `make -k` keeps going past a failed task, as the pipeline's own runner does.
RAWDIR ?= raw
OUTDIR ?= redux
NIGHTS ?=
YAML   ?= $(dir $(lastword $(MAKEFILE_LIST)))../pipeline/nightly.yaml
PIPELINE ?= spx-pipeline

.PHONY: all $(NIGHTS)
all: $(NIGHTS)

$(NIGHTS):
	mkdir -p $(OUTDIR)/make
	$(PIPELINE) makefile $(YAML) --var rawdir=$(RAWDIR) --var outdir=$(OUTDIR) --var night=$@ \
	    -o $(OUTDIR)/make/Makefile-$@
	$(MAKE) -f $(OUTDIR)/make/Makefile-$@
