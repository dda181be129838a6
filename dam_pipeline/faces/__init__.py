"""People in a photo library: faces found and described (``describe``), grouped into
persons (``grouping``) and kept with every name and decision (``people_store``)."""
