"""The audio pipeline: devices, capture, playback, resampling, endpointing.

numpy's bundled OpenBLAS starts one worker thread per core when numpy is imported. The pipeline does
only small matrix products (a resampler's filter bank over 20 ms), which are faster on the calling
thread, and on a 4-core Pi three idle BLAS threads are memory and wake-ups for nothing; so unless the
owner set it, BLAS runs single-threaded. Set here because this package is imported before numpy is.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
