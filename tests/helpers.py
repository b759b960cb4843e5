"""Builders shared by tests: tiny model/tokenizer/SAE and encoded items."""

from __future__ import annotations

import hashlib
import time

from igds.demo import tiny_model, tiny_sae, tiny_tokenizer
from igds.modeling.batching import EncodedItem

TEXTS = [
    "The cat sat on the mat and looked at the moon.",
    "Summarize: a tool that converts images between formats.",
    "Translate to English: Der Hund schläft im Garten.",
    "What is 12 plus 30? The answer is 42.",
    "A long line of numbers 0000000000 and newlines\n\n\n appear here.",
    "Short one.",
    "Emacs is an extensible, customizable, free text editor.",
    "Alice has 5 apples and gives 2 to Bob; she keeps 3.",
]


def make_items(tok, texts=TEXTS, repeat: int = 1) -> list[EncodedItem]:
    """Encode texts as prompt/response items (split at the middle of each text), with token spans:
    BOS is template, the first half content, the second half response."""
    items = []
    for r in range(repeat):
        for t in texts:
            text = f"{t} #{r}"
            ids = tok(text, add_special_tokens=False)["input_ids"]
            ids = [tok.bos_token_id, *ids]
            eid = hashlib.sha256(text.encode()).hexdigest()[:16]
            plen = max(2, len(ids) // 2)
            # BOS is the template; the prompt's text is content; no instruction
            spans = {"template": ((0, 1),), "instruction": (), "content": ((1, plen),),
                     "response": ((plen, len(ids)),)}
            items.append(EncodedItem(example_id=eid, input_ids=ids, prompt_len=plen, spans=spans))
    return items


def tiny_setup(layer: int = 1):
    """(model, tokenizer, sae) of matching shapes."""
    model = tiny_model()
    tok = tiny_tokenizer()
    sae = tiny_sae(d_in=model.config.hidden_size, layer=layer)
    return model, tok, sae


def registered_store(path, folders, site: str = "blocks.1.hook_resid_post", dtype: str = "float32"):
    """A store at ``path`` with the tiny model (in ``dtype``) and SAE saved in ``folders`` (``(model_dir, sae_dir)``)
    loaded and registered with their specs, as a workspace would (so remote pool workers can load them); returns
    ``(store, model, tokenizer, sae, model_key, sae_key)``."""
    from igds.modeling.load import ModelSpec, load_model, model_identity, model_key_of
    from igds.modeling.sae import SaeSpec, load_sae
    from igds.store import ActivationStore
    from igds.workflow.workspace import model_spec_record

    model_dir, sae_dir = folders
    mspec, sspec = ModelSpec(name_or_path=str(model_dir), dtype=dtype, device="cpu"), SaeSpec(source=str(sae_dir))
    model, tok = load_model(mspec)
    sae, info = load_sae(sspec)
    store = ActivationStore(path)
    mkey = model_key_of(model)
    store.register_model(mkey, model_identity(model), model_spec_record(mspec))
    store.register_sae(info.key, {**info.to_dict(), "site": site}, info.quality, sspec.to_dict())
    return store, model, tok, sae, mkey, info.key


def wait_until(pred, timeout: float = 60.0, poll: float = 0.05):
    """Poll ``pred()`` until it returns something truthy (returned); fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := pred():
            return value
        time.sleep(poll)
    raise AssertionError(f"condition not met within {timeout} s")


def app_page(page: str, timeout: float = 60, session: dict | None = None, **params):
    """A new browser session of the dashboard (an AppTest with its own session state, seeded with ``session``)
    opened with URL state ``params`` (as a link would) and switched to ``page`` (``pages/4_selection.py``), checked
    for exceptions."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=timeout)
    for k, v in (session or {}).items():
        at.session_state[k] = v
    at.query_params.update({k: str(v) for k, v in params.items()})
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def vet_current(at) -> str:
    """The example the Selection page's vetting queue shows (its id is in the header's data attribute)."""
    header = next(m.value for m in at.markdown if 'class="vet-current"' in m.value)
    return header.split('data-example="')[1].split('"')[0]


def shown_selection(at) -> set[str]:
    """The example ids of the selection the Selection page shows (its examples table)."""
    return set(at.dataframe(key="sel_table").value.example_id)


def tiny_workspace(store, parts: dict, model=None):
    """The :class:`~igds.workflow.workspace.Workspace` of a tiny demo build (``build_tiny_workspace``'s parts), on
    ``model`` (default: the build's own; pass a fresh one where an adapter will be injected)."""
    from igds.workflow.workspace import Workspace

    return Workspace(store=store, model=parts["model"] if model is None else model, tokenizer=parts["tokenizer"],
                     sae=parts["sae"], model_key=parts["model_key"], sae_key=parts["sae_key"], site=parts["site"],
                     sae_info={})
