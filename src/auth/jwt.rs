//! Session tokens: HS256 JWTs. Only HS256 is accepted, so `alg: none` and tokens signed
//! with other algorithms fail like a wrong signature.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use callplane_schema::ids::{AgentId, CustomerId};
use callplane_schema::models::agent::Role;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub customer_id: Option<CustomerId>,
    pub agent_id: AgentId,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone)]
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

impl Jwt {
    pub fn new(secret: &[u8], ttl_secs: u64) -> Jwt {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Jwt {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        }
    }

    pub fn issue(&self, agent_id: &AgentId, customer_id: Option<&CustomerId>, role: Role) -> Result<String, String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: agent_id.to_string(),
            customer_id: customer_id.cloned(),
            agent_id: agent_id.clone(),
            role,
            iat: now,
            exp: now.saturating_add(self.ttl_secs),
        };
        self.sign(&claims)
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let jwt = Jwt::new(b"0123456789abcdef0123456789abcdef", 60);
        let agent = AgentId::new();
        let token = jwt.issue(&agent, None, Role::Admin).expect("sign");
        assert_eq!(jwt.verify(&token).expect("valid").agent_id, agent);

        let other = Jwt::new(b"another secret, also 32 bytes long", 60);
        assert!(other.verify(&token).is_err(), "wrong key");

        let now = chrono::Utc::now().timestamp();
        let expired = Claims {
            sub: agent.to_string(),
            customer_id: None,
            agent_id: agent.clone(),
            role: Role::Admin,
            iat: now - 7200,
            exp: now - 3600,
        };
        assert!(jwt.verify(&jwt.sign(&expired).expect("sign")).is_err(), "expired");

        // alg: none, with the same claims and no signature.
        let (header_and_claims, _) = token.rsplit_once('.').expect("three parts");
        let (_, claims) = header_and_claims.split_once('.').expect("three parts");
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.");
        assert!(jwt.verify(&none).is_err(), "alg none");
    }
}
