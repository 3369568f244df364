"""S4C: segmentation-for-classification screening for pancreatic neuroendocrine tumours.

Arrays are always Z, Y, X (slowest to fastest); spacings are millimetres in the same order.
"""

__version__ = "0.1.0"
