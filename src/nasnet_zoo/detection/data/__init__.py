"""Detection data: COCO-format datasets, transforms, batch samplers and the embedded demo dataset."""
