DROP TABLE subscriber_cursors;
DROP TABLE billings;
