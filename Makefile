.PHONY: run test lint bench

run:  ## set up and run the product with demo traffic (zero setup)
	scripts/run

test:  ## run the whole test suite
	scripts/test

lint:
	.venv/bin/ruff check .

bench:
	.venv/bin/python bench/ingest.py
