-- The nominal coverage of the advice's intervals (1 - alpha), stored with each advice row so that what is shown is
-- the level that was used; rows stored before this column existed were made at the then fixed 80%.
ALTER TABLE advice ADD COLUMN level DOUBLE DEFAULT 0.8;
