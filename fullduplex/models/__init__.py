"""One small wrapper per model kind: vad, stt, llm, tts. Weights come from installed packages only."""
