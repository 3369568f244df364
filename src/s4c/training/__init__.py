"""Training-side code for the S4C segmentation network: the deep-supervision loss (:mod:`.loss`)."""
