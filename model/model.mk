# model/: the Spin model of the protocol (docs/MODEL.md).  Included by the
# top Makefile.  'make model' and 'make check-model' (run by 'make check')
# check every configuration exhaustively; a few seconds in all.
.PHONY: model check-model
model check-model:
	@sh model/run.sh $(B)/model
