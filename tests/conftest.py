"""Shared test set-up: Keras runs on the torch backend unless the environment chose one."""
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).parent))  # tests/models.py
