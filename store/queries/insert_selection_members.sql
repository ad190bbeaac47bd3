-- `selection_members_batch` is a DataFrame registered on the connection (rank, example_id).
INSERT INTO selection_members (subset_id, rank, example_id)
SELECT $subset_id, rank, example_id FROM selection_members_batch;
