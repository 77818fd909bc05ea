"""The batch layer: a run over an export folder (`runner`), its configuration (`config`),
one sample's unit of work (`task`, `sample`, `measure`), the executors (`execute`), the
results written (`results`) and kept (`store`, `persist`), the inputs' identity (`identity`)
and the watcher (`watch`)."""
