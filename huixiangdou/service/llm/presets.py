"""Known OpenAI-compatible services as data: base URL, default model, context length (characters)
and the environment variable that may hold the key.

It does not talk to any service; every field can be overridden in [llm.server].
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    base_url: str
    # 'auto' asks the service's GET /v1/models for its first model (self-hosted servers).
    model: str
    context_length: int
    api_key_env: str
    # Self-hosted servers usually run without a key; the SDK still needs a non-empty string.
    needs_key: bool = True


PRESETS: dict[str, Preset] = {
    'deepseek': Preset('https://api.deepseek.com/v1', 'deepseek-chat', 64000, 'DEEPSEEK_API_KEY'),
    'kimi': Preset('https://api.moonshot.cn/v1', 'moonshot-v1-128k', 128000, 'MOONSHOT_API_KEY'),
    'gpt': Preset('https://api.openai.com/v1', 'gpt-4o-mini', 128000, 'OPENAI_API_KEY'),
    'zhipuai': Preset('https://open.bigmodel.cn/api/paas/v4', 'glm-4-flash', 128000, 'ZHIPUAI_API_KEY'),
    'step': Preset('https://api.stepfun.com/v1', 'step-1-8k', 8000, 'STEP_API_KEY'),
    'siliconcloud': Preset('https://api.siliconflow.cn/v1', 'Qwen/Qwen2.5-7B-Instruct', 32000,
                           'SILICONCLOUD_API_KEY'),
    'qwen': Preset('https://dashscope.aliyuncs.com/compatible-mode/v1', 'qwen-plus', 128000,
                   'DASHSCOPE_API_KEY'),
    # InternLM's chat API moved here from internlm-chat.intern-ai.org.cn/puyu/api/v1 (its 2024 address).
    'internlm': Preset('https://chat.intern-ai.org.cn/api/v1', 'internlm3-latest', 32000, 'INTERNLM_API_KEY'),
    # PPIO's OpenAI-compatible endpoint; the model is the one upstream HuixiangDou defaults to for ppio.
    'ppio': Preset('https://api.ppinfra.com/v3/openai', 'thudm/glm-4-9b-chat', 32000, 'PPIO_API_KEY'),
    # A GPT reseller upstream HuixiangDou supports; base URL as upstream uses it.
    'xi-api': Preset('https://api.xi-ai.cn/v1', 'gpt-4o-mini', 128000, 'XI_API_KEY'),
    'vllm': Preset('http://127.0.0.1:8000/v1', 'auto', 32000, 'VLLM_API_KEY', needs_key=False),
    'lmdeploy': Preset('http://127.0.0.1:23333/v1', 'auto', 32000, 'LMDEPLOY_API_KEY', needs_key=False),
    'ollama': Preset('http://127.0.0.1:11434/v1', 'auto', 8000, 'OLLAMA_API_KEY', needs_key=False),
}
