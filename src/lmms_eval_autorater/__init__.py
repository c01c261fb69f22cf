"""AutoRater for lmms-eval: VLM judges that read specialist image assessments.

Kept import-light: importing the package pulls in no torch and no transformers.
"""

__version__ = "0.1.0"
