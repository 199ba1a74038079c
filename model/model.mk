# Placeholder until the Spin model lands.
check-model model:
	@echo "model: not yet"; false
