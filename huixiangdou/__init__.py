"""huixiangdou: a knowledge assistant for group chats (Lark/Feishu, WeChat)."""
import os

__version__ = '0.1.0'

# The OpenMP pools of the embedding engine, FAISS and torch share the process: threads that spin while
# waiting starve one another on a busy machine (one query's embedding: 40 ms alone, 450-900 ms with another
# pool spinning beside it, bench/bench_loops.py). Sleeping threads cost nothing measurable on batch work.
# Set before any of them loads (it is read when the library starts); a value the user set is kept.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
