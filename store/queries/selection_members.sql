SELECT rank, example_id FROM selection_members WHERE subset_id = $subset_id ORDER BY rank;
