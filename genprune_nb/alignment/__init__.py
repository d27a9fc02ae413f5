"""Alignment with humans: word surprisal against self-paced reading times (behavior), and ridge encoding of fMRI
responses to sentences, over all units or language-localized ones (neural)."""
