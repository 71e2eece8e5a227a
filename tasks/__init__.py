"""CodeXGLUE tasks: each task is a YAML in conf/task/; this package holds the code that YAML points at."""
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
