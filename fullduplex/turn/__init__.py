"""Architecture 4: a predictive turn-taking model, trained here from synthesised speech.

``TurnPredictor.load().predict(audio_tail, transcript, silence_s)`` -> P(the user is done);
``decision(prob, silence_s)`` -> take the turn now? Signals (prosody, transcript markers, Smart Turn
v3.2, an optional LLM end-of-utterance probability) live in ``signals.py``; ``fullduplex turn train``
rebuilds the model, ``fullduplex turn eval`` scores it against silence thresholds and Smart Turn.
"""

from .model import TurnPredictor
from .signals import SmartTurn

__all__ = ["TurnPredictor", "SmartTurn"]
