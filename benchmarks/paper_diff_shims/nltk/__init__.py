"""optimize.py imports nltk.tokenize.word_tokenize and never calls it."""
