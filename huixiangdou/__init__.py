"""huixiangdou: a knowledge assistant for group chats (Lark/Feishu, WeChat)."""
__version__ = '0.1.0'
