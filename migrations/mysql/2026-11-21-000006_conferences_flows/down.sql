DROP TABLE flow_secrets;
DROP TABLE messages;
DROP TABLE numbers;
DROP TABLE conferencecalls;
DROP TABLE conferences;
DROP TABLE activeflows;
DROP TABLE flows;
