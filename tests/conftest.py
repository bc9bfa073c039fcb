"""Suite-wide settings: one torch intra-op thread.

CI and the development machines have 2 cores shared by the test process and the Ray
workers some tests start; oversubscribed torch threads spin and made single tests
20x slower under load. Results do not depend on the thread count.
"""

import torch

torch.set_num_threads(1)
