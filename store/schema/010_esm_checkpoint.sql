-- Each ESM names the checkpoint it was fitted from (`store.checkpoints.CheckpointKey.cache_key`: base model, training
-- rows, recipe, seed); its cache key is a hash of that key and the map's parameters, so two recipes that tune on the
-- same rows no longer share an ESM. Rows written before this migration keep NULL and their old keys, which no plan
-- asks for any more (they are misses, rebuilt under the new key). Imported ESMs without a checkpoint here carry
-- a stand-in that says where they came from ('hfselect:<checksum>', 'rows:<data_hash>').
ALTER TABLE esms ADD COLUMN checkpoint_key VARCHAR;
