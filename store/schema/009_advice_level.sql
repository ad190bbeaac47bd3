-- The nominal coverage of the advice's intervals (1 - alpha), stored with each advice row so that what is shown is
-- the level that was used. Learned rows stored before this column existed were made at the then fixed 80%; fused
-- rows have no interval, so no level.
ALTER TABLE advice ADD COLUMN level DOUBLE;
UPDATE advice SET level = 0.8 WHERE basis = 'learned';
