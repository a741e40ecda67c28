DROP TABLE IF EXISTS dead_letters;
DROP VIEW IF EXISTS change_deployments;
DROP TABLE IF EXISTS incidents;
DROP TABLE IF EXISTS deployment_commits;
DROP TABLE IF EXISTS deployments;
DROP TABLE IF EXISTS changes;
DROP TABLE IF EXISTS events;
