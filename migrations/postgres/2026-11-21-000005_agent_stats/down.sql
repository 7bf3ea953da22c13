DROP TABLE agent_stats;
ALTER TABLE calls DROP COLUMN owner_id;
