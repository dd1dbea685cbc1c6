"""Check: a corpus of captures with their goldens (corpus.py), compared run after run, in
parallel or on a Dask cluster (goldens.py); and the two decoders compared on one capture
(crosscheck.py)."""
