"""The feature store: build (builder), files (store_files), query (store), calibrate (calibration); CLI in __main__."""
from huixiangdou.service.feature_store.query_features import QueryFeatures
from huixiangdou.service.feature_store.store import FeatureStore, RejectScore, ScoredChunk
from huixiangdou.service.feature_store.store_files import Manifest, StoreError

__all__ = ['FeatureStore', 'Manifest', 'QueryFeatures', 'RejectScore', 'ScoredChunk', 'StoreError']
