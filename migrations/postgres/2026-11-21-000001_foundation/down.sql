DROP TABLE events;
DROP TABLE billing_accounts;
DROP TABLE accesskeys;
DROP TABLE agents;
DROP TABLE customers;
