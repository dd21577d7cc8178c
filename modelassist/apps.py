from django.apps import AppConfig


class ModelassistConfig(AppConfig):
    name = "modelassist"

    def ready(self) -> None:
        # Annotation (below model assist) reads the one lung mask through this reader.
        from annotation.lung_masks import lung_mask_reader_set

        def read(scan):  # type: ignore[no-untyped-def]
            from modelassist.services.quantification import lung_mask_cached

            return lung_mask_cached(scan)

        lung_mask_reader_set(read)
