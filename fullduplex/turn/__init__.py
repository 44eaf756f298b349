"""Architecture 4: a predictive turn-taking model, trained here from synthesised speech.

``TurnPredictor.load().predict(audio_tail, transcript, silence_s)`` -> P(the user is done);
``decision(prob, silence_s)`` -> take the turn now? Signals: prosody and transcript markers in
``signals.py``; Smart Turn v3.2 and the optional LLM end-of-utterance probability are model wrappers in
``fullduplex/models/`` (``smart_turn.py``, ``llm_eou.py``). ``fullduplex turn train``
rebuilds the model, ``fullduplex turn eval`` scores it against silence thresholds and Smart Turn.
"""

__all__ = ["TurnPredictor"]


def __getattr__(name: str):
    # Lazy: `fullduplex --help` imports turn/cli.py, and should not pay for scipy and the model here.
    if name == "TurnPredictor":
        from .model import TurnPredictor
        return TurnPredictor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
