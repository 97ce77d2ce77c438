"""creepscan: how cheaply can a frozen foundation model be repurposed for prohibited tasks?"""

__version__ = "0.1.0"
