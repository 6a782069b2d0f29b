"""Lexicon, phone sets, the lang directory (L.fst) and the n-gram LM (G.fst).

The stages are :func:`prepare_lang` (``asr-kd prepare-lang``) and :func:`train_lm`
(``asr-kd train-lm``); every later stage reads the lang directory through
:meth:`Lang.load`.
"""

from asr_kd.lang.lang_dir import Lang, prepare_lang
from asr_kd.lang.lexicon import OOV_WORD, build_lexicon
from asr_kd.lang.lm import arpa_perplexity, train_lm
from asr_kd.lang.texts import read_texts, texts_from_manifest

__all__ = [
    "OOV_WORD",
    "Lang",
    "arpa_perplexity",
    "build_lexicon",
    "prepare_lang",
    "read_texts",
    "texts_from_manifest",
    "train_lm",
]
