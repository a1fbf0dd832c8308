"""Import Keras the convlens way: pick the torch backend only if nobody chose one.

convlens sets ``KERAS_BACKEND=torch`` only when the user has not set
``KERAS_BACKEND`` and keras is not imported yet; otherwise it leaves the
user's choice alone.
"""
from __future__ import annotations

import os
import sys
from types import ModuleType

from convlens.errors import ModelError

__all__ = ["import_keras"]


def import_keras() -> ModuleType:
    if "keras" not in sys.modules and "KERAS_BACKEND" not in os.environ:
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError as exc:
        raise ModelError(
            f"Keras 3 is not installed ({exc}); install it with pip install 'convlens[keras]'"
        ) from None
    if not hasattr(keras, "ops"):
        raise ModelError(
            f"convlens needs Keras 3; found keras {getattr(keras, '__version__', '?')}; "
            "upgrade with pip install 'keras>=3'"
        )
    return keras
