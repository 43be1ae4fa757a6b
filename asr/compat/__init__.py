"""Drop-in APIs of other recognizers on gru-asr (`asr.compat.vosk`)."""
