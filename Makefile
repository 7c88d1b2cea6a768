.PHONY: run test lint bench

run:  ## set up and run the product with demo traffic (zero setup)
	scripts/run

test:  ## run the whole test suite
	scripts/test

lint:  ## ruff, and the import contract (.importlinter)
	.venv/bin/ruff check .
	.venv/bin/lint-imports --no-cache

bench:
	.venv/bin/python bench/ingest.py
