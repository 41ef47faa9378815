"""Chen & Manning's transition-based dependency parser as a tool for any CoNLL-U treebank.

Split by concern: ``conllu`` (reading, checking and writing files), ``vocab``
(the joint id space of words, tags and labels), ``transitions`` (the
arc-standard system, its oracle, the 48 features, greedy decoding), ``scoring``
(UAS/LAS as the CoNLL 2018 shared task defines them), ``model`` (parse,
save, load), ``training`` (train) and ``cli`` (``fastgrad parser train|parse|evaluate``).
"""
