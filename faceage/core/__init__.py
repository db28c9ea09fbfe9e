"""What every stage shares, and nothing else: errors, the console and progress bar, atomic writes, image
loading, the one folder walk, the table contracts and the stage file names.

Reads and writes nothing of its own; imports no other faceage package, and never torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
