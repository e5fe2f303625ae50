"""The feature store: build (builder), query (store), calibrate (calibration); CLI in __main__."""
from huixiangdou.service.feature_store.store import FeatureStore, Manifest, RejectScore, ScoredChunk, StoreError

__all__ = ['FeatureStore', 'Manifest', 'RejectScore', 'ScoredChunk', 'StoreError']
