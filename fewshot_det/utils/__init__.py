"""Bottom-layer helpers shared by every package of fewshot_det (no torch import at load).

    files   atomic file writes (a reader never sees a partial file)
    dist    rank and world size of the running process
"""
