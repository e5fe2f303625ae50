"""Calls the hybrid LLM server's /inference endpoint with aiohttp and prints the answer.

Start the server first (python -m huixiangdou.service.llm_server_hybrid), then:
    python inference_client.py "What does chunk_overlap do?"
    python inference_client.py --backend remote --url http://127.0.0.1:8888/inference "怎么重建索引？"
"""
import argparse
import asyncio
import sys

import aiohttp


async def ask(url: str, prompt: str, history: list[list[str]], backend: str, timeout: float) -> dict:
    """POST one prompt; return the JSON answer {"text", "backend", "model"}."""
    body = {"prompt": prompt, "history": history, "backend": backend}
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        async with session.post(url, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                # Errors are JSON too: 400 bad body, 413 too large, 503 no backend, 504 upstream timeout.
                raise RuntimeError(f"LLM server answered {resp.status}: {data}")
            return data


async def check_health(base: str) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            async with session.get(base + "/health") as resp:
                return resp.status == 200
    except aiohttp.ClientError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description="Ask the huixiangdou LLM server one question.")
    parser.add_argument("prompt")
    parser.add_argument("--url", default="http://127.0.0.1:8888/inference")
    parser.add_argument("--backend", choices=["auto", "local", "remote"], default="auto")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    base = args.url.rsplit("/", 1)[0]
    if not asyncio.run(check_health(base)):
        print(f"no LLM server at {base}: start it with python -m huixiangdou.service.llm_server_hybrid",
              file=sys.stderr)
        return 1
    # Multi-turn: earlier turns go in history as [user, assistant] pairs.
    history = [["What is huixiangdou?", "A knowledge assistant for group chats."]]
    answer = asyncio.run(ask(args.url, args.prompt, history, args.backend, args.timeout))
    print(f"[{answer['backend']} / {answer['model']}] {answer['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
