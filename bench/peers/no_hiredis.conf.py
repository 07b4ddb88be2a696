"""api/gunicorn.conf.py with hiredis hidden, so redis-py parses replies in pure Python (bench/tail.py).

redis-py decides at import whether hiredis is there; the workers are forked from this process,
so hiding it before anything imports redis turns it off in every worker.
"""

import runpy
import sys
from pathlib import Path

sys.modules["hiredis"] = None  # type: ignore[assignment]  # `import hiredis` now raises ImportError

import redis.utils  # noqa: E402

assert not redis.utils.HIREDIS_AVAILABLE, "hiredis still visible to redis-py"
_conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "api" / "gunicorn.conf.py"))
globals().update({name: value for name, value in _conf.items() if not name.startswith("__")})
