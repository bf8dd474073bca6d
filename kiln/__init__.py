"""Shared core of Kiln: the error hierarchy, the artifact format and model-store access.

Nothing here imports scikit-learn; BentoML is imported only inside the store functions.
"""
